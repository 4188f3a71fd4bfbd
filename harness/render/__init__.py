"""What people look at: the report, the sizing and history pages (one page builder), figures and tables."""
