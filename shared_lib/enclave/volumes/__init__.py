"""Medical image volumes: DICOM series grouped, checked and assembled with their geometry."""
