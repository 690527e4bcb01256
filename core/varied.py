"""GEN_STYLE "varied": captchas unlike any one site's, to learn features that carry over to unseen styles.

ImageCaptcha draws every character of a captcha in one colour from a handful of fonts of one family. Real
captchas differ in everything that style keeps fixed, so a model pretrained on it reads a new style poorly
until it has seen many labelled examples. Here every image draws, from its own seeded random.Random:

- each character in its own font (any Latin font the machine has, `fonts()`), size, angle, colour and
  height; letters in either case when the charset holds only one (the label keeps the charset's case, as
  sites that ignore case do); the gaps from overlapping to wide, so the width follows the text;
- colours chosen against the page where each character lands: on a light page from dark to so pale that
  they barely stand out, on a dark one bright (saturated colours, white) or dim;
- a white, tinted, speckled or two-tone page, a page shading from dark to light, or a dark one; now and then
  the text at one side of a wide blank page; 0-8 straight lines, curves or dots across it;
- one image in three in the ImageCaptcha style itself (its warped glyphs and noise curve).

`draw(label, rng, height, fonts)` returns an RGB PIL image `height` pixels tall. No torch here: only PIL.
"""
import functools
import glob
import math
import os

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageStat

FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", os.path.expanduser("~/.fonts"))
# fonts whose letters are not letters (dingbats, Greek symbol sets) or a script that is not Latin
NOT_LATIN = ("d050000l", "dingbat", "symbol", "standardsymbols", "emoji", "math")
GLYPHS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
IMAGECAPTCHA_SHARE = 1 / 3


@functools.lru_cache(maxsize=8)
def fonts(dirs=FONT_DIRS, own=True):
    """Sorted paths of the TrueType / OpenType fonts found in the folders `dirs` that draw every glyph of GLYPHS,
    plus (own) the captcha package's own; the same font packages give the same list (and the same images)
    anywhere."""
    found = []
    for root in dirs:
        for ext in ("ttf", "otf", "TTF", "OTF"):
            found += glob.glob(os.path.join(root, "**", f"*.{ext}"), recursive=True)
    if own:
        import captcha
        found += glob.glob(os.path.join(os.path.dirname(captcha.__file__), "data", "*.ttf"))
    usable = []
    for path in sorted(set(os.path.realpath(p) for p in found)):
        name = os.path.basename(path).lower().replace("-", "").replace("_", "")
        if any(word in name for word in NOT_LATIN) or not draws_latin(path):
            continue
        usable.append(path)
    return tuple(usable)


def draws_latin(path):
    """True if the font at `path` opens and draws every glyph of GLYPHS as something other than its
    missing-glyph box."""
    try:
        font = ImageFont.truetype(path, 24)
    except OSError:
        return False
    missing = _pixels(font, "\uffff"), _pixels(font, "\U000f0000")
    for ch in GLYPHS:
        drawn = _pixels(font, ch)
        if not drawn[1] or drawn in missing:
            return False
    return True


def _pixels(font, ch):
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=4096)
def _font(path, size):
    return ImageFont.truetype(path, size)


def _hsv(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return int(r * 255), int(g * 255), int(b * 255)


def _page(rng, width, height):
    """A page: white (30 %), tinted light, plain (25 %), speckled (15 %) or two-tone (12 %), shading from dark to
    light (10 %), or dark (8 %)."""
    kind = rng.random()
    if kind < 0.3:
        return Image.new("RGB", (width, height), (255, 255, 255))
    if kind < 0.82:
        light = _hsv(rng.random(), rng.uniform(0, 0.25), rng.uniform(0.88, 1.0))
        page = Image.new("RGB", (width, height), light)
    else:  # a shade from dark to light across the page, or a dark page
        dark = _hsv(rng.random(), rng.uniform(0, 0.3) if rng.random() < 0.5 else 0, rng.uniform(0.05, 0.55))
        if kind < 0.92:
            return _shade(rng, width, height, dark, _hsv(rng.random(), rng.uniform(0, 0.2), rng.uniform(0.75, 1.0)))
        return Image.new("RGB", (width, height), dark)
    if kind < 0.55:
        return page
    draw = ImageDraw.Draw(page)
    if kind < 0.7:  # speckles of another light colour
        other = _hsv(rng.random(), rng.uniform(0, 0.35), rng.uniform(0.75, 1.0))
        for _ in range(width * height // rng.randint(15, 60)):
            draw.point((rng.randrange(width), rng.randrange(height)), fill=other)
    else:  # two tones split at a slant
        other = _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0.8, 1.0))
        x0, x1 = rng.uniform(0, width), rng.uniform(0, width)
        draw.polygon([(x0, 0), (width, 0), (width, height), (x1, height)], fill=other)
    return page


def _shade(rng, width, height, one, other):
    """A page shading linearly from colour `one` to `other`: left to right or the reverse (most), or top to
    bottom or the reverse."""
    if rng.random() < 0.5:
        one, other = other, one
    ramp = Image.linear_gradient("L")  # 256x256, black at the top, white at the bottom
    if rng.random() < 0.8:
        ramp = ramp.rotate(90)  # black at the left
    ramp = ramp.resize((width, height), Image.BILINEAR)
    return Image.composite(Image.new("RGB", (width, height), other), Image.new("RGB", (width, height), one), ramp)


def _luma(rgb):
    r, g, b = rgb
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255


def _ink(rng, under):
    """A character's colour on a page of mean luminance `under` (0-1) where it lands. On a light page: mostly
    clearly darker than the page, sometimes pale (a fifth of them). On a darker one: mostly bright (saturated
    colours, white), at least 0.3 of luminance off the page; a fifth of them close to it (dim)."""
    if under >= 0.7:
        if rng.random() < 0.2:
            return _hsv(rng.random(), rng.uniform(0.15, 0.6), rng.uniform(0.8, 1.0))
        if rng.random() < 0.25:
            return _hsv(rng.random(), rng.uniform(0, 0.3), rng.uniform(0, 0.35))
        return _hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.3, 0.95))
    dim = rng.random() < 0.2
    for _ in range(20):  # the last draw stands if none of the 20 is as far off the page as asked
        colour = _hsv(rng.random(), rng.uniform(0, 1) if rng.random() < 0.8 else 0, rng.uniform(0, 1))
        off = abs(_luma(colour) - under)
        if (0.08 <= off < 0.3) if dim else off >= 0.3:
            break
    return colour


def _glyph(ch, rng, height, fonts_):
    font = _font(rng.choice(fonts_), max(8, int(height * rng.uniform(0.45, 0.85))))
    left, top, right, bottom = font.getbbox(ch)
    w, h = max(1, right - left), max(1, bottom - top)
    mask = Image.new("L", (w + 4, h + 4), 0)
    ImageDraw.Draw(mask).text((2 - left, 2 - top), ch, font=font, fill=255)
    angle = rng.uniform(-30, 30) if rng.random() < 0.8 else 0.0
    if angle:
        mask = mask.rotate(angle, resample=Image.BILINEAR, expand=True)
    if mask.height > height:
        mask = mask.resize((max(1, mask.width * height // mask.height), height), Image.BILINEAR)
    return mask


def _curves(rng, image, count):
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(count):
        colour = (0, 0, 0) if rng.random() < 0.4 else _hsv(rng.random(), rng.uniform(0.3, 1), rng.uniform(0.2, 0.9))
        kind = rng.random()
        if kind < 0.6:  # a straight line, anywhere, often from edge to edge
            points = [(rng.uniform(-0.2, 1.2) * width, rng.uniform(0, height)) for _ in range(2)]
            draw.line(points, fill=colour, width=rng.choice((1, 1, 1, 2, 3)))
        elif kind < 0.85:  # a sine-like curve across the text
            amp, phase, freq = rng.uniform(2, height / 3), rng.uniform(0, 6.3), rng.uniform(0.5, 3) / width
            mid, step = rng.uniform(height / 4, 3 * height / 4), max(2, width // 60)
            points = [(x, mid + amp * math.sin(phase + 2 * math.pi * freq * x)) for x in range(0, width + step, step)]
            draw.line(points, fill=colour, width=rng.choice((1, 2, 2, 3)))
        else:  # dots
            for _ in range(rng.randint(width // 4, width)):
                x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.choice((0.5, 1, 1.5))
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _flip_case(label, charset, rng):
    """Letters drawn in either case when the charset holds only one of the two (the label is not changed)."""
    out = []
    for ch in label:
        other = ch.swapcase()
        out.append(other if other != ch and other not in charset and rng.random() < 0.5 else ch)
    return "".join(out)


def draw_own(label, rng, height, fonts_, charset):
    """The varied style proper (not ImageCaptcha's): see the module's docstring."""
    text = _flip_case(label, charset, rng)
    masks = [_glyph(ch, rng, height, fonts_) for ch in text]
    gaps = [int(m.width * rng.uniform(-0.15, 0.6)) for m in masks]
    margin = int(height * rng.uniform(0.05, 0.5))
    text_width = sum(m.width for m in masks) + sum(gaps[:-1])
    spare = int(text_width * rng.uniform(0.3, 1.5)) if rng.random() < 0.15 else 0  # blank page on one side
    width = max(height, margin * 2 + text_width + spare)
    page = _page(rng, width, height)
    x = margin + (spare if rng.random() < 0.3 else 0)
    same_colour = rng.random() < 0.25
    colour = None
    for mask, gap in zip(masks, gaps):
        y = rng.randint(0, max(0, height - mask.height))
        if colour is None or not same_colour:
            box = (x, y, min(width, x + mask.width), min(height, y + mask.height))
            colour = _ink(rng, _luma(ImageStat.Stat(page.crop(box)).mean[:3]) if box[2] > box[0] else 1.0)
        page.paste(colour, (x, y), mask)
        x += mask.width + gap
    _curves(rng, page, rng.choice((0, 0, 1, 2, 3, 4, 5, 6, 8)))
    if rng.random() < 0.2:
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return page


_imagecaptchas = {}


def draw_imagecaptcha(label, height):
    """ImageCaptcha's own style (its fonts), about 40 px a character wide for a 60-px height."""
    from captcha.image import ImageCaptcha
    width = max(height, int(height * (0.35 + 0.55 * len(label))))
    key = (width, height)
    if key not in _imagecaptchas:
        _imagecaptchas[key] = ImageCaptcha(width=width, height=height)
    return _imagecaptchas[key].generate_image(label)


def font_files(given):
    """FONTS as font files: a folder stands for the Latin fonts in it (fonts((folder,), own=False)), a file for
    itself; a ConfigError naming a folder that holds none or a file that is not a font."""
    import config
    files = []
    for entry in given:
        if os.path.isdir(entry):
            inside = fonts((entry,), own=False)
            if not inside:
                raise config.ConfigError(f"FONTS names the folder {entry}, which holds no Latin TrueType / OpenType "
                                         f"font (.ttf / .otf drawing 0-9, A-Z and a-z): put some there or name "
                                         f"another folder")
            files += inside
        else:
            try:
                ImageFont.truetype(entry, 12)
            except OSError as e:
                why = "no such file" if not os.path.exists(entry) else f"not a font Pillow opens ({e})"
                raise config.ConfigError(f"FONTS names {entry}: {why}; name .ttf / .otf files or a folder of "
                                         f"them, e.g. --fonts='(\"/usr/share/fonts/truetype/dejavu\",)'") from None
            files.append(entry)
    return tuple(files)


def fonts_to_use(given=()):
    """font_files(`given`) (FONTS) if set, else fonts(); a ConfigError naming the fix when there is none."""
    import config
    chosen = font_files(given) or fonts()
    if not chosen:
        raise config.ConfigError(f"GEN_STYLE varied found no Latin TrueType / OpenType font in {', '.join(FONT_DIRS)}: "
                                 f"install some (Debian: apt install fonts-dejavu-core fonts-liberation2) or name "
                                 f".ttf files or a folder of them with --fonts='(\"/path/a.ttf\",)'")
    return chosen


def style_fonts(given, style):
    """The font files GEN_STYLE `style` draws from: "varied" fonts_to_use(FONTS), ImageCaptcha font_files(FONTS)
    (empty: the captcha package's own). Read once by the parent, not by every generator process."""
    return fonts_to_use(given) if style == "varied" else font_files(given)


def draw(label, rng, height, fonts_=(), charset=""):
    """An RGB image `height` pixels tall of `label` in the varied style. ImageCaptcha draws from `secrets`:
    the caller points captcha.image.secrets at `rng` first (core.generate.SeededSecrets)."""
    if rng.random() < IMAGECAPTCHA_SHARE:
        return draw_imagecaptcha(label, height)
    return draw_own(label, rng, height, tuple(fonts_) or fonts_to_use(), charset)
