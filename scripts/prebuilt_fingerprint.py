"""What a prebuilt nspl_filler library was built from, and whether it fits this checkout and
this torch: the SHA-256 of every source and header the library is compiled from (csrc/,
nspl_filler/include/, setup.py), torch's release (2.11.0 of 2.11.0+cu130: local tags are one
ABI), torch's CUDA version, the compute capabilities compiled, and whether it holds CUDA
kernels. scripts/prebuild_cuda_library.sh writes it beside the library; scripts/gpu_check.sh
checks it before using the library instead of building one.

    python scripts/prebuilt_fingerprint.py --write .prebuilt/FINGERPRINT --arch 9.0
    python scripts/prebuilt_fingerprint.py --check .prebuilt/FINGERPRINT   # exit 1, and why, if not
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATTERNS = ("csrc/**/*.cpp", "csrc/**/*.h", "csrc/**/*.cu", "csrc/**/*.cuh", "nspl_filler/include/**/*.h", "setup.py")


def sources_digest(root: str = ROOT) -> str:
    files = sorted({os.path.relpath(p, root) for pattern in PATTERNS
                    for p in glob.glob(os.path.join(root, pattern), recursive=True)})
    digest = hashlib.sha256()
    for rel in files:
        digest.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def torch_identity() -> dict:
    import torch  # noqa: PLC0415

    return {"torch": torch.__version__.split("+")[0], "cuda": torch.version.cuda}


def mismatch(recorded: dict, current: dict, capability: str | None) -> str | None:
    """Why a library with fingerprint `recorded` does not fit, or None if it does."""
    for key, what in (("torch", "torch"), ("cuda", "torch's CUDA")):
        if recorded.get(key) != current.get(key):
            return f"built for {what} {recorded.get(key)}, this is {current.get(key)}"
    if recorded.get("sources") != current.get("sources"):
        return "built from other sources than this checkout's"
    if capability is not None and capability not in recorded.get("arch", []):
        return f"built for compute capabilities {recorded.get('arch')}, this GPU is {capability}"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="PATH", help="record the fingerprint of this checkout and torch")
    action.add_argument("--check", metavar="PATH", help="exit 1 unless the recorded fingerprint fits")
    parser.add_argument("--arch", default="9.0", help="compute capabilities compiled, ';'-separated (--write)")
    parser.add_argument("--no-cuda", action="store_true", help="the library holds no CUDA kernels (--write)")
    args = parser.parse_args(argv)

    current = dict(torch_identity(), sources=sources_digest())
    if args.write:
        recorded = dict(current, arch=[a.replace("+PTX", "") for a in args.arch.split(";") if a],
                        cuda_kernels=not args.no_cuda)
        with open(args.write, "w") as f:
            json.dump(recorded, f, indent=1, sort_keys=True)
            f.write("\n")
        return 0
    try:
        with open(args.check) as f:
            recorded = json.load(f)
    except (OSError, ValueError) as error:
        print(f"no readable fingerprint at {args.check} ({error})")
        return 1
    import torch  # noqa: PLC0415

    capability = "%d.%d" % torch.cuda.get_device_capability() if torch.cuda.is_available() else None
    why = mismatch(recorded, current, capability)
    if why:
        print(why)
        return 1
    print(f"torch {current['torch']}, CUDA {current['cuda']}, sources {current['sources'][:12]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
