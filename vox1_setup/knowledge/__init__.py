"""Domain knowledge as data tables, each with a comment naming its source (FIELD-NOTES.md)."""
