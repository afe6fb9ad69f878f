from tests.scale.harness import make_stack

__all__ = ["make_stack"]
