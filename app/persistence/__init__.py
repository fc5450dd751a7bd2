"""Storage: SQLModel tables, the engine, repositories and the unit of work."""
