"""Held-out PSNR / SSIM of a nerfstudio run on chosen test images, with nerfstudio's own metrics.

Runs in nerfstudio's venv (not nerfkit's), through the offline wrapper's LPIPS stub:

    /tmp/nsvenv/bin/python bench/peer_nerfacto_eval.py RUN/config.yml --images 0,5,10,15,20

`ns-eval` renders the whole test split (25 views of object-a take over 14 minutes on the 2-core
CPU); this renders only the listed views, each with `get_outputs_for_camera` and scores it with
`get_image_metrics_and_images` (nerfstudio's PSNR / SSIM, background blended as in its eval).
Prints one line per view and the mean.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

PEERS = Path(__file__).resolve().parents[2] / "shared" / "peers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--images", default="0,5,10,15,20", help="test-split indices, comma separated")
    parser.add_argument("--peers", type=Path, default=PEERS, help="folder of ns_train_offline.py")
    args = parser.parse_args()
    sys.path.insert(0, str(args.peers))
    import ns_train_offline  # noqa: F401  (stubs LPIPS: its weights cannot be downloaded offline)

    original_load = torch.load
    torch.load = lambda *a, **k: original_load(*a, **{**k, "weights_only": False})   # its own checkpoint
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, checkpoint, step = eval_setup(args.config, test_mode="test")
    dataset = pipeline.datamanager.eval_dataset
    pipeline.eval()
    scores = []
    for index in (int(i) for i in args.images.split(",")):
        start = time.perf_counter()
        with torch.no_grad():
            outputs = pipeline.model.get_outputs_for_camera(dataset.cameras[index:index + 1].to(pipeline.device))
            batch = {key: value.to(pipeline.device) if torch.is_tensor(value) else value
                     for key, value in dataset[index].items()}
            metrics, _ = pipeline.model.get_image_metrics_and_images(outputs, batch)
        scores.append((float(metrics["psnr"]), float(metrics["ssim"])))
        print(f"test view {index}: PSNR {scores[-1][0]:.2f} dB, SSIM {scores[-1][1]:.4f}, "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    psnr = sum(s[0] for s in scores) / len(scores)
    ssim = sum(s[1] for s in scores) / len(scores)
    print(f"{checkpoint.name} (step {step}): mean of {len(scores)} views: PSNR {psnr:.2f} dB, SSIM {ssim:.4f}")


if __name__ == "__main__":
    main()
