"""``kubegate report``: spend, tokens, refusals, PII and residency from the audit stream, for a time range.

``source`` reads records (Redis stream or an export file) and checks the hash chain; ``build`` aggregates them
(pure); ``render`` writes a terminal table, CSV files and one self-contained HTML file with inline SVG charts.
"""
