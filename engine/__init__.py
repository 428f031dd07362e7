"""Proofroom engine: everything that makes images.

At module level, torch is imported only by ``engine.finite``, ``engine.gpu``,
``engine.calls``, ``engine.pipelines``, ``engine.job_images``, ``engine.render`` and
``engine.tiny``; diffusers and transformers only by ``engine.tiny`` (``engine.pipelines`` and
``engine.render`` load them through it). These are imported only inside a worker
(``engine.tasks`` and ``engine.worker`` import them in the functions that need them).

A few light modules import the heavy libraries lazily, inside the functions that use them:
``engine.prompts`` and ``engine.embeddings`` (torch, when encoding and loading),
``engine.samplers`` (diffusers, in ``make_scheduler``), ``engine.sources`` (diffusers and
transformers, when loading), ``engine.clip_vocab`` (transformers, to build a tokenizer) and
``engine.loras`` (torch for pickled files; transformers to quiet its logging). The drop-in
folder modules (``tensor_files``, ``model_files``, ``model_folders``, ``lora_formats``,
``file_hashes``) import none of them, since the bots scan the folders too. Every module
other than those above is safe to import from the light chat processes.
"""
