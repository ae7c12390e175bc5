"""One module per dataset, discovered by :mod:`benchmark.data.registry`; what each provides is in
:mod:`benchmark.data.contract`. Copy ``_template.py`` to ``<name>.py`` to add one. Modules starting with ``_`` are
templates or helpers shared by several datasets, not datasets."""
