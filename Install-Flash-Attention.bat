@echo off
rem Install-Flash-Attention.bat: set up FlashAttention 2 for VOX-1 (double-click it in the VOX-1 folder).
rem Installs the prebuilt wheel that fits this PC when one does, verifies it, saves the settings; safe to rerun.
rem Finds VOX-1's Python: system_python\python.exe next to this file, else the py launcher (py -3), else python.
rem No ( ) blocks around paths: a folder such as "C:\Program Files (x86)\VOX-1" would end them early.
setlocal EnableExtensions DisableDelayedExpansion
set "VOX1_APP_DIR=%~dp0"
if "%VOX1_APP_DIR:~-1%"=="\" set "VOX1_APP_DIR=%VOX1_APP_DIR:~0,-1%"
cd /d "%VOX1_APP_DIR%"
set "PY_EXE=%VOX1_APP_DIR%\system_python\python.exe"
set "RC=0"
if exist "%PY_EXE%" goto run_bundled
where py >nul 2>nul
if not errorlevel 1 goto run_launcher
where python >nul 2>nul
if not errorlevel 1 goto run_path
echo.
echo No Python found: not "%PY_EXE%", not the py launcher, not python on PATH.
echo Put this file in the VOX-1 folder, next to the system_python folder, and run it again.
set "RC=2"
goto report

:run_bundled
"%PY_EXE%" -m vox1_setup wizard --yes --no-start
set "RC=%ERRORLEVEL%"
goto report

:run_launcher
py -3 -m vox1_setup wizard --yes --no-start
set "RC=%ERRORLEVEL%"
goto report

:run_path
python -m vox1_setup wizard --yes --no-start
set "RC=%ERRORLEVEL%"
goto report

:report
echo.
if "%RC%"=="0" goto ok
echo Setup did not finish (exit code %RC%). Nothing was left half-changed: read the message above.
echo To see what is wrong, run this in the VOX-1 folder: system_python\python.exe -m vox1_setup doctor
goto finish

:ok
echo Done. Start VOX-1 with RUN-VOX-1.bat.

:finish
if not defined VOX1_NO_PAUSE pause
exit /b %RC%
