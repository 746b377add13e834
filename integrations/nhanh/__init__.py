"""Nhanh.vn Open API v3.0 (https://apidocs.nhanh.vn/v3): the client (``client.NhanhClient``) and a local
sandbox (``sandbox.NhanhSandbox``) that speaks the same API over generated customers."""
