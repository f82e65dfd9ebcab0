"""What torch.jit.script of any fastrnn.nn module meets (its __prepare_scriptable__ hook, which
torch.jit.script calls on every submodule first)."""


def refuse_script(module):
    """Raises: the modules' forwards call fastrnn's kernels from Python, which TorchScript
    cannot compile; says what can."""
    raise RuntimeError(f"fastrnn.nn.{type(module).__name__} cannot be compiled by torch.jit.script: its forward "
                       f"calls fastrnn's kernels from Python, which TorchScript cannot compile. Use torch.jit.trace, "
                       f"torch.compile or torch.export instead")
