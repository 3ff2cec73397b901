"""The workflows block: ``tickbase.workflows``, ``tickbase.workflow_runs`` and
``tickbase.workflow_steps``. Owns DAG validation and ordering (``dag``), the
in-database orchestration of runs (``engine``) and the Python front end
(``api``)."""
