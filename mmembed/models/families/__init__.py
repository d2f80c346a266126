"""One module per tower family; each calls ``models.family.register_family`` on import."""
