"""Sign-up surges: new accounts per window against the baseline, clustered by email domain,
network, name pattern, invite and app; the DM proposes closing registrations or blocking the email domain."""
