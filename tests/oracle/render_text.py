#!/usr/bin/python3
"""render_text — text-line images for the PP-OCR text-direction classifier
(ch_ppocr_mobile_v2.0_cls_infer.onnx): each line upright and the same image
turned 180 degrees, as 192x48 RGB PNG files.

A line is drawn in one of Debian's DejaVu fonts (fonts-dejavu-core), cropped
to its ink with a small margin, and resized to 48 pixels high and 192 wide:
what PaddleOCR's classifier makes of a detected text box whose width is at
least four times its height (resize to height 48 keeping the aspect ratio,
at most 192 wide). So each PNG is the classifier's input as it is, and the
classifier's own normalisation, (x / 255 - 0.5) / 0.5, is all that remains.
Dark text on a light grey-scale ground: PaddleOCR reads images as BGR, and
grey has the same value in either order.

  text1-0.png   text1-180.png   ...

usage: render_text.py OUT_DIR
"""
import os
import sys

from PIL import Image, ImageDraw, ImageFont, ImageOps

FONTS = "/usr/share/fonts/truetype/dejavu/"
WIDTH, HEIGHT = 192, 48

# text, font file, ink, ground; short lines, 4.5 to 6 times as wide as high
# when cropped, so that the resize to 192x48 squeezes them little
LINES = [
    ("Hello world", "DejaVuSans.ttf", 0, 255),
    ("Szegedy 2013", "DejaVuSerif.ttf", 20, 245),
    ("blindspot", "DejaVuSansMono.ttf", 40, 230),
    ("Text line", "DejaVuSans-Bold.ttf", 0, 255),
]


def render(text, font_file, ink, ground):
    font = ImageFont.truetype(os.path.join(FONTS, font_file), 64)
    left, top, right, bottom = font.getbbox(text)
    margin = 8
    img = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), ground)
    ImageDraw.Draw(img).text((margin - left, margin - top), text, font=font, fill=ink)
    return img.resize((WIDTH, HEIGHT), Image.BILINEAR).convert("RGB")


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: render_text.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for i, (text, font_file, ink, ground) in enumerate(LINES, start=1):
        img = render(text, font_file, ink, ground)
        img.save(os.path.join(out, f"text{i}-0.png"))
        ImageOps.flip(ImageOps.mirror(img)).save(os.path.join(out, f"text{i}-180.png"))
    print(f"render_text: {2 * len(LINES)} text lines of {WIDTH}x{HEIGHT} in {out}")


if __name__ == "__main__":
    main()
