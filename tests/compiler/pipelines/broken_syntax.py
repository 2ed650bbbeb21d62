from stepflow.workflow.function_step import step


@step
def one(:
    return 1
