"""creditgate: the GraphQL credits gateway of an AI 3D-generation platform."""
