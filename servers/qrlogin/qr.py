"""The QR code image, made in Python: ``qrcode`` with its pure-Python PNG writer (pypng, no Pillow)."""
from __future__ import annotations

import io

import qrcode
import qrcode.image.pure


def qr_png(text: str, box_size: int = 8, border: int = 4) -> bytes:
    """A PNG image of a QR code encoding ``text`` (a URL a phone camera opens)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=border,
                         image_factory=qrcode.image.pure.PyPNGImage)
    code.add_data(text)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer)
    return buffer.getvalue()
