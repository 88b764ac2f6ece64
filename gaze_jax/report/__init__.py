"""Report stage: terminal tables, figures and report.md, from plain dicts and the JSON and
CSV files that runs leave behind."""
