"""analyze: meeting notes (summary, rules, keywords) offline, or from an LLM endpoint."""
