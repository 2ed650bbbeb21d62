from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step
def one():
    return 1


first = Pipeline(name="first", steps=[one()])
second = Pipeline(name="second", steps=[one()])
