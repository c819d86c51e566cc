"""Report surges: reports against one server (or ours) counted per window against their own
baseline; the DM offers to limit the server, suspend the reported accounts, resolve the wave's reports."""
