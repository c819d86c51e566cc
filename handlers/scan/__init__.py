"""The peer scan: every peer's NodeInfo read, its software judged against the advisories, the
findings sized by follows and proposed (limit, suspend, or tell their admins)."""
