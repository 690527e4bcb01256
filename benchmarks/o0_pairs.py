"""Why `O` and `0` cap the default model: draw each captcha twice from the same random draws, once as
"O0O0" and once as "0O0O", and measure how much of the two glyphs' ink overlaps.

    python benchmarks/o0_pairs.py      # writes docs/o0_pairs.png, prints the overlap over 300 pairs

ImageCaptcha crops each glyph to its ink and stretches it back to the font's cell, which in its monospace font
is the same for every character, so the narrower `0` ends as wide as `O`; only the stroke shape differs.
"""
import os
import random
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as `python benchmarks/<name>.py`: the project's modules are one folder up
import captcha.image  # noqa: E402

from core.generate import SeededSecrets  # noqa: E402


def draw(captcha_, text, seed, **kw):
    captcha.image.secrets = SeededSecrets(random.Random(seed))
    return captcha_.generate_image(text, **kw) if not kw else captcha_.create_captcha_image(text, **kw)


def main():
    captcha_ = captcha.image.ImageCaptcha()
    sheet = Image.new("L", (2 * 160 + 10, 6 * 62), 255)
    for row in range(6):
        for col, text in enumerate(("O0O0", "0O0O")):
            sheet.paste(draw(captcha_, text, f"pair-{row}").convert("L"), (col * 170, row * 62))
    out = os.path.join(ROOT, "docs", "o0_pairs.png")
    sheet.resize((sheet.width * 2, sheet.height * 2)).save(out)

    ious = []
    for i in range(300):  # one glyph, white on black, so that the ink is a clean mask
        o, zero = (np.asarray(draw(captcha_, c, f"iou-{i}", color=(255, 255, 255, 255), background=(0, 0, 0))
                              .convert("L")) > 128 for c in ("O", "0"))
        ious.append((o & zero).sum() / (o | zero).sum())
    print(f"wrote {out} (left O0O0, right 0O0O, each row one set of random draws)")
    print(f"ink overlap (IoU) of O and 0 drawn with the same random draws, 300 pairs: mean {np.mean(ious):.3f}, "
          f"10th percentile {np.percentile(ious, 10):.3f}, min {np.min(ious):.3f}")


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
    elif len(sys.argv) > 1:
        sys.exit(f"error: {sys.argv[1]}: this script takes no options\n\n{__doc__}")
    else:
        main()
