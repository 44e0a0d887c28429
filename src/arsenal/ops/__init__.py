"""Operations: what Arsenal can do to an attached node, one module per category."""
