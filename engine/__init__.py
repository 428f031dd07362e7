"""Proofroom engine: everything that makes images.

Only ``engine.pipelines`` and ``engine.render`` import torch or diffusers; every
other module here is safe to import from the light chat processes.
"""
