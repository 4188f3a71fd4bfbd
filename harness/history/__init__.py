"""Regression tracking across library versions: stacks from pins (`harness.launch.stacks`), a catalog of result
sets (`catalog`; where it is and how it is opened, an SQLite file or a shared PostgreSQL database, `catalog_db`; its
tables `catalog_schema`, its versions `migrations`), change points over it (`changepoints`, `trend`), the CI check
(`check`), and bisecting a library's releases (`bisect`, `bisect_run`)."""
