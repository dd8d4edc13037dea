"""Access control: tokens, roles and the interceptors that enforce them."""
