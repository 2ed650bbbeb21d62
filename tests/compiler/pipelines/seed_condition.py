"""Seed example: a ConditionStep reading an @step output, branches with FailStep and @step."""

from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionGreaterThanOrEqualTo
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import step
from stepflow.workflow.pipeline import Pipeline


@step(name="evaluate")
def evaluate_model():
    # code to evaluate the model
    return {"rmse": 3.5}


@step(name="register")
def register_model():
    # code to register the model
    return None


conditionally_register = ConditionStep(
    name="conditional_register",
    conditions=[
        ConditionGreaterThanOrEqualTo(
            # Output of the evaluate step must be json serializable
            left=evaluate_model()["rmse"],
            right=5,
        )
    ],
    if_steps=[FailStep(name="Fail", error_message="Model performance is not good enough")],
    else_steps=[register_model()],
)

pipeline = Pipeline(name="seed-condition", steps=[conditionally_register])
