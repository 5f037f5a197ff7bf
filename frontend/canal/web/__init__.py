"""The page shell: layout, shared components, translations and static assets."""
