"""Which CUDA builds of each torch minor PyTorch publishes as pip wheels, as data.

Source: pytorch.org "Previous PyTorch Versions" (the `--index-url https://download.pytorch.org/whl/cuXYZ` lines of
each release). Used to turn "a wheel for torch 2.6 exists" into something the user can install: a torch minor with
a CUDA build of the wheel's CUDA major and, on Linux, the wheel's C++11 ABI (knowledge/abi.py: torch 2.6 is ABI 1
only as +cu126). Minors missing here are described by their CUDA major only.
"""

from __future__ import annotations

from dataclasses import dataclass

from vox1_setup.knowledge.abi import torch_pip_abi

INDEX_URL = "https://download.pytorch.org/whl/{variant}"

# torch minor -> CUDA variants on download.pytorch.org, oldest first.
TORCH_CUDA_BUILDS: dict[tuple[int, int], tuple[str, ...]] = {
    (2, 0): ("cu117", "cu118"),
    (2, 1): ("cu118", "cu121"),
    (2, 2): ("cu118", "cu121"),
    (2, 3): ("cu118", "cu121"),
    (2, 4): ("cu118", "cu121", "cu124"),
    (2, 5): ("cu118", "cu121", "cu124"),
    (2, 6): ("cu118", "cu124", "cu126"),
    (2, 7): ("cu118", "cu126", "cu128"),
    (2, 8): ("cu126", "cu128", "cu129"),
    (2, 9): ("cu126", "cu128", "cu130"),
}


@dataclass(frozen=True)
class TorchBuild:
    torch: tuple[int, int]
    variant: str  # "cu126"

    @property
    def cuda(self) -> str:
        return f"{self.variant[2:4]}.{int(self.variant[4:])}"

    @property
    def pip_command(self) -> str:
        return (f'pip install "torch=={self.torch[0]}.{self.torch[1]}.*" '
                f"--index-url {INDEX_URL.format(variant=self.variant)}")

    def __str__(self) -> str:
        return f"torch {self.torch[0]}.{self.torch[1]} +{self.variant}"


def torch_build_for(torch: tuple[int, int], cuda_major: int, cuda_label: str | None, *,
                    linux_abi: bool | None = None) -> TorchBuild | None:
    """The published torch build a wheel for `torch` + CUDA `cuda_major` runs with: the wheel's own CUDA label
    when torch has that build, else the newest build of that CUDA major; on Linux only builds whose C++11 ABI is
    `linux_abi` (None: any). None when the table has no such build."""
    variants = [v for v in TORCH_CUDA_BUILDS.get(torch, ()) if int(v[2:4]) == cuda_major]
    if linux_abi is not None:
        version = f"{torch[0]}.{torch[1]}.0"
        variants = [v for v in variants if torch_pip_abi(version, TorchBuild(torch, v).cuda) == linux_abi]
    if not variants:
        return None
    label = f"cu{cuda_label.replace('.', '')}" if cuda_label and "." in cuda_label else None
    return TorchBuild(torch, label if label in variants else variants[-1])
