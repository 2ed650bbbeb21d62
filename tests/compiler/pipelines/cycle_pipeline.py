from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.step_outputs import get_step


@step
def a():
    return 1


@step
def b(x):
    return x


first = a()
second = b(first)
get_step(first).add_depends_on([second])
pipeline = Pipeline(name="cycle", steps=[second])
