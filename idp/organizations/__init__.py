"""Organizations run by their members: roles and what each may do (:mod:`.policy`), the
changes themselves (:mod:`.service`), invitations (:mod:`.invitations`) and branding
(:mod:`.branding`)."""
