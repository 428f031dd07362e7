"""Proofroom engine: everything that makes images.

At module level, torch is imported only by ``engine.finite``, ``engine.pipelines``,
``engine.render`` and ``engine.tiny``; diffusers and transformers only by ``engine.tiny``
(``engine.pipelines`` and ``engine.render`` load them through it). These four are imported
only inside a worker (``engine.tasks`` and ``engine.worker`` import them in the functions
that need them).

A few light modules import the heavy libraries lazily, inside the one function that uses
them: ``engine.prompts`` (torch, in the prompt encoding), ``engine.samplers`` (diffusers, in
``make_scheduler``), ``engine.sources`` (diffusers, in ``dtype_argument``) and
``engine.loras`` (transformers, to quiet its logging while an adapter loads). Every module
other than those four is safe to import from the light chat processes.
"""
