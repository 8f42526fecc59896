"""Loans: the applications a borrower makes and what the service knows about them."""
