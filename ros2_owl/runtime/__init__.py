"""One frame path for every front end: the session that turns frames into results."""
