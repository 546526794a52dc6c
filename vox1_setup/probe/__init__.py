"""Detection: the target interpreter (probe script), the NVIDIA driver and GPUs, and the host.

Entry points: `detect_environment(...) -> Environment` (everything) and `probe_interpreter(python, timeout)`
(the target interpreter only, cheaper: no NVIDIA or host queries).
"""

from vox1_setup.probe.detect import detect_environment
from vox1_setup.probe.interpreter import ProbeFacts, probe_interpreter, torch_from_probe

__all__ = ["ProbeFacts", "detect_environment", "probe_interpreter", "torch_from_probe"]
