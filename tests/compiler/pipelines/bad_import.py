from stepflow.workflow.function_step import step

import module_that_does_not_exist_anywhere  # noqa: F401
