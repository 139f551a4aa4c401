"""Tests of the LWA emulator, :mod:`lwa_middleware.testing`, one module per module."""
