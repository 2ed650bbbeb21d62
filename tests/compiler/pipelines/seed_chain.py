"""Seed examples: data dependency, explicit add_depends_on, two parallel leaves."""

from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline
from stepflow.workflow.step_outputs import get_step

raw_data = "s3://my-bucket/raw.csv"


@step
def preprocess(raw_data):
    return raw_data.upper()


@step
def train(training_data):
    return len(training_data)


@step
def train_alone():
    return 1


@step
def process1():
    return "a"


@step
def process2():
    return "b"


step_process_result = preprocess(raw_data)
step_train_result = train(step_process_result)
pipeline = Pipeline(name="seed-data-dependency", steps=[step_train_result])

explicit_result = train_alone()
get_step(explicit_result).add_depends_on([step_process_result])
explicit = Pipeline(name="seed-explicit-dependency", steps=[explicit_result])

parallel = Pipeline(name="seed-parallel", steps=[process1(), process2()])
