"""Discount approvals: the requests that sales reps make and approvers decide."""
