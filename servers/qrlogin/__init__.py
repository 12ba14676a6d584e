"""The QR-login app (lessons 07-10): tickets in a shared Redis, push channels private to each server.

``start_qrlogin(name, fix=..., redis_url=...)`` starts one server; see ``app.py`` for where state
lives, ``push.py`` for the push interface every fix plugs into, ``fixes/`` for the fixes, and
``servers.clients.qr`` for the simulated browser and phone.
"""
from servers.qrlogin.app import QRLoginApp, make_qrlogin_app, start_qrlogin

__all__ = ["QRLoginApp", "make_qrlogin_app", "start_qrlogin"]
