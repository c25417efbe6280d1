"""Finding, importing and storing DAG files (see processor.parse_dags_folder)."""
