"""A reproducible benchmark and ablation harness for distillation-style learning.

Methods live in ``methods/<name>/method.py`` and baselines in ``baselines/<name>/method.py``; each defines a class
``Method`` following :class:`benchmark.contract.MethodBase`. ``benchmark/`` never imports from those folders by name:
they are discovered (:mod:`benchmark.discovery`).
"""

__version__ = "0.1.0"
