"""The request path: authentication, tenant resolution, the access guard, errors."""
