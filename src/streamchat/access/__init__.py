"""Who is asking and how much they may take: keys, identity, limits (DESIGN.md §7, §8)."""
