from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step
def score():
    return 0.5


result = score()
if result:  # a pipeline variable has no value yet
    pass
pipeline = Pipeline(name="misuse", steps=[result])
