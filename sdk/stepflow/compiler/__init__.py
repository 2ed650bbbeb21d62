"""Compile a Pipeline into a bundle (definition + artifacts); publish it (publish.py)."""

from stepflow.compiler.compile import compile_pipeline

__all__ = ["compile_pipeline"]
