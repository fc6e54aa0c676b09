"""The Streamlit app (ui/app.py) and its helpers."""
