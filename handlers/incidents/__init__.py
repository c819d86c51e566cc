"""Domain blocks as events (polled), the incidents they open, the public announcements held
for a moderator's cancel, and the incident pages those announcements link to."""
