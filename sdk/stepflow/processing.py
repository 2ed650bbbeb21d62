"""``stepflow.processing``: where ported code finds ``sagemaker.processing``'s names."""

from stepflow.workflow.processing import ProcessingInput, ProcessingOutput, Processor, ScriptProcessor

__all__ = ["ProcessingInput", "ProcessingOutput", "Processor", "ScriptProcessor"]
