"""Customer-churn pipeline: preprocess → train → evaluate → condition → register | fail.

Written exactly as for SageMaker Pipelines' ``@step`` decorator, with ``sagemaker.``
replaced by ``stepflow.`` in the imports. The dataset is generated from a seed inside the
first step, so the example needs no download and no third-party packages: every step does
real (if small) computation in plain Python.
"""

from stepflow.workflow.condition_step import ConditionStep
from stepflow.workflow.conditions import ConditionGreaterThanOrEqualTo
from stepflow.workflow.fail_step import FailStep
from stepflow.workflow.function_step import step
from stepflow.workflow.functions import Join
from stepflow.workflow.parameters import ParameterFloat, ParameterInteger
from stepflow.workflow.pipeline import Pipeline

rows = ParameterInteger(name="Rows", default_value=2000)
epochs = ParameterInteger(name="Epochs", default_value=150)
threshold = ParameterFloat(name="AccuracyThreshold", default_value=0.75)


@step(name="preprocess")
def preprocess(n_rows: int, seed: int = 7) -> dict:
    """Generate a synthetic churn table, standardise it and split it 80/20."""
    import math
    import random

    rng = random.Random(seed)
    features, labels = [], []
    for _ in range(n_rows):
        tenure = rng.uniform(0, 72)            # months as a customer
        monthly = rng.uniform(15, 120)         # monthly bill
        tickets = rng.randint(0, 9)            # support tickets last quarter
        contract = rng.choice([0.0, 1.0])      # 1 = yearly contract
        score = -0.06 * tenure + 0.025 * monthly + 0.45 * tickets - 1.4 * contract - 0.8
        churned = 1 if rng.random() < 1 / (1 + math.exp(-score)) else 0
        features.append([tenure, monthly, float(tickets), contract])
        labels.append(churned)

    columns = list(zip(*features))
    means = [sum(c) / len(c) for c in columns]
    stds = [max(1e-9, (sum((x - m) ** 2 for x in c) / len(c)) ** 0.5) for c, m in zip(columns, means)]
    scaled = [[(x - m) / s for x, m, s in zip(row, means, stds)] for row in features]
    cut = int(0.8 * n_rows)
    return {
        "train": (scaled[:cut], labels[:cut]),
        "test": (scaled[cut:], labels[cut:]),
        "churn_rate": sum(labels) / n_rows,
    }


@step(name="train")
def train(data: dict, epochs: int, learning_rate: float = 0.5) -> dict:
    """Fit a logistic regression by full-batch gradient descent."""
    import math

    x, y = data["train"]
    weights, bias = [0.0] * len(x[0]), 0.0
    for _ in range(epochs):
        grad_w, grad_b = [0.0] * len(weights), 0.0
        for row, label in zip(x, y):
            p = 1 / (1 + math.exp(-(sum(w * v for w, v in zip(weights, row)) + bias)))
            for i, v in enumerate(row):
                grad_w[i] += (p - label) * v
            grad_b += p - label
        weights = [w - learning_rate * g / len(x) for w, g in zip(weights, grad_w)]
        bias -= learning_rate * grad_b / len(x)
    return {"weights": weights, "bias": bias, "epochs": epochs}


@step(name="evaluate")
def evaluate(model: dict, data: dict) -> dict:
    """Accuracy and log-loss on the held-out split; a condition reads the accuracy."""
    import math

    x, y = data["test"]
    correct, loss = 0, 0.0
    for row, label in zip(x, y):
        z = sum(w * v for w, v in zip(model["weights"], row)) + model["bias"]
        p = min(max(1 / (1 + math.exp(-z)), 1e-12), 1 - 1e-12)
        correct += int((p >= 0.5) == bool(label))
        loss -= label * math.log(p) + (1 - label) * math.log(1 - p)
    return {"accuracy": round(correct / len(y), 4), "log_loss": round(loss / len(y), 4)}


@step(name="register")
def register(model: dict, metrics: dict) -> dict:
    """Stand-in for a model registry: returns the record a registry would store."""
    return {"model": model, "metrics": metrics, "approved": True}


data = preprocess(rows)
model = train(data, epochs)
metrics = evaluate(model, data)

quality_gate = ConditionStep(
    name="accuracy-gate",
    conditions=[ConditionGreaterThanOrEqualTo(left=metrics["accuracy"], right=threshold)],
    if_steps=[register(model, metrics)],
    else_steps=[
        FailStep(
            name="accuracy-too-low",
            error_message=Join(on=" ", values=["accuracy", metrics["accuracy"], "is below", threshold]),
        )
    ],
)

pipeline = Pipeline(
    name="churn",
    parameters=[rows, epochs, threshold],
    steps=[quality_gate],
)
