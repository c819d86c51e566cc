"""The command channel: mentions read, a moderator's reply parsed, checked against their role and
carried out once, and the paced admin work an approval starts (resolving a wave's reports, held posts)."""
