"""Automated QA of rendered images, on the worker before an image is posted: cheap scores
(``scores``), thresholds turned into flags (``checks``), the optional local NSFW classifier
(``nsfw``), and the per-job assessor that applies them (``assess``). No torch here except
inside ``nsfw``, imported lazily."""
