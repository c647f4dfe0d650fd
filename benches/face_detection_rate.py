"""The face detector's measured rates quoted in the README (Privacy):
scikit-image's lfw_subset (100 faces, 100 non-faces, upscaled) and the demo
corpus at the default 224 px center crop. Run: python benches/face_detection_rate.py"""

from pathlib import Path

import fastprep as fp
import numpy as np
from fastprep.privacy.faces import detect_faces
from skimage import data, transform

lfw = data.lfw_subset()  # 200 x 25x25 greyscale in [0, 1]: 100 faces, then 100 non-faces
for side in (48, 96):
    hits = np.array(
        [
            bool(
                detect_faces(
                    (np.stack([transform.resize(i, (side, side))] * 3, -1) * 255).astype(np.uint8)
                )
            )
            for i in lfw
        ]
    )
    print(f"lfw_subset at {side}px: {hits[:100].sum()}/100 faces, {hits[100:].sum()}/100 non-faces")
corpus = Path(fp.__file__).parent / "sample_data" / "corpus"
files = sorted(p for p in corpus.iterdir() if p.suffix in (".jpg", ".png", ".webp"))
batch = fp.decode_images([p.read_bytes() for p in files], size=224)
found = {}
for i, path in enumerate(files):
    if batch.column("error")[i].as_py() is None:
        pixels = batch.column("pixels").slice(i, 1).to_numpy_ndarray()[0]
        found[path.stem] = len(detect_faces(np.ascontiguousarray(pixels)))
print(
    f"demo corpus at 224 px: {len(found)} images; with boxes:",
    {k: v for k, v in found.items() if v},
)
