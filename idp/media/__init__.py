"""Pictures people upload: checked, re-encoded and shaped (:mod:`.images`), stored in the
database and served with URLs that change with the content (:mod:`.store`)."""
